/*
 * spawn.h: tasks: coroutines whose blocking calls yield to poll (binding; doc/design.md).
 */
#ifndef ACH_BINDING_SPAWN_H
#define ACH_BINDING_SPAWN_H

#include "binding/binding.h"
#include "core/engine.h"

void ach_spawn_open(lua_State *L);
void ach_spawn_methods(lua_State *L);
/* Is L a task of the client at cl that can yield here? */
int ach_spawn_active(lua_State *L, int cl);
/* Instead of blocking: anchors the request at the top of L, starts it, and yields. */
int ach_spawn_wait(lua_State *L, int cl, ach_exchange *ex);
/* Resumes task thread co with the n values on top of L (popped) and settles the task. */
void ach_spawn_resume(lua_State *L, int cl, lua_State *co, int n);
/* Resumes the tasks that yielded by themselves; returns how many. */
int ach_spawn_resume_idle(lua_State *L, int cl);

#endif
