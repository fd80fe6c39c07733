/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_CONTAINER_H
#define STOMPGATE_CONTAINER_H

#include <stddef.h>

/* The struct of type that holds member at ptr: handles embed their libuv
 * handles and links by value and get back to themselves this way. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
