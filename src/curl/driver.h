/*
 * driver.h: the libcurl driver (doc/design.md, "Layers"): moves the bytes of a core's
 * exchanges over one libcurl multi handle, with the state store's socket in the same poll.
 */
#ifndef ACH_CURL_DRIVER_H
#define ACH_CURL_DRIVER_H

#include "core/engine.h"

/* Gives the core a libcurl driver (core->drv); 0, or -1 when libcurl could not start. */
int ach_curl_driver_init(ach_core *core);

#endif
