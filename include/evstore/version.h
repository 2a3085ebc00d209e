/* evstore/version.h: the library's version, the only place it is written. */
#ifndef EVSTORE_VERSION_H
#define EVSTORE_VERSION_H

#define EVS_VERSION_MAJOR 0
#define EVS_VERSION_MINOR 1
#define EVS_VERSION_PATCH 0
#define EVS_VERSION_STRING "0.1.0"

#endif
