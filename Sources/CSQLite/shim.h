// SQLite's C API from Debian's libsqlite3-dev (scripts/bootstrap installs it).
#ifndef AGENTD_CSQLITE_SHIM_H
#define AGENTD_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
