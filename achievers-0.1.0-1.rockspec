-- The LuaRock of lua-achievers. Built offline with: luarocks make --deps-mode=none
rockspec_format = "3.0"
package = "achievers"
version = "0.1.0-1"
source = {
  url = "git+file://.",
  tag = "v0.1.0",
}
description = {
  summary = "Achievers Open API v5 client (OAuth 2.0, libcurl), with a local API emulator",
  detailed = [[
A Lua module written in C for the Achievers employee-recognition API: both OAuth 2.0 flows,
token objects that know their expiry, every documented endpoint, answers as Lua tables,
blocking and asynchronous calls on one connection pool. It ships the sandbox, an emulator of
the API for tests and rehearsals (require "achievers.sandbox", or the achievers-sandbox
program).
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1.0",
}
-- libcurl, hiredis, libmicrohttpd and jansson are found with pkg-config by the Makefile (Debian:
-- libcurl4-openssl-dev libhiredis-dev libmicrohttpd-dev libjansson-dev). The `achievers`
-- program uses lua-posix (Debian: lua-posix) when it is there, to fsync its token file; without
-- it, the coreutils `sync` command does.
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    BUILD = "build/rock",
    WERROR = "",
  },
  install_target = "install",
  -- the install target checks the build is current, so it must see the same flags as the build
  -- (otherwise it rebuilds against the default Lua's headers)
  install_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    BUILD = "build/rock",
    WERROR = "",
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
-- `luarocks test` runs the whole spec suite against the sandbox (make test: Lua 5.4 by default)
test = {
  type = "command",
  command = "make test",
}
