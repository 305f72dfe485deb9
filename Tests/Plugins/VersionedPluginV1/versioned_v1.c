#define VERSIONED_PLUGIN_VERSION 1
#include "../VersionedCommon/versioned.h"
