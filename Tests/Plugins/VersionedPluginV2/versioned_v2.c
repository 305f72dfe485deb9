#define VERSIONED_PLUGIN_VERSION 2
#include "../VersionedCommon/versioned.h"
