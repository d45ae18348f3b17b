-- make demo: runs every example end to end; each starts its own in-process sandbox.
local build = os.getenv("ACHIEVERS_BUILD") or "build/5.4"
local lua = os.getenv("ACHIEVERS_LUA") or "lua5.4"
local examples = {
  "examples/client_credentials.lua",
  "examples/user_flow.lua",
  "examples/get_recognitions.lua",
  "examples/send_recognition.lua",
  "examples/create_achievement.lua",
  "examples/game_loop.lua",
}
local env = ("LUA_CPATH='%s/?.so;;' LUA_PATH='src/lua/?.lua;src/lua/?/init.lua;;' "):format(build)
for _, ex in ipairs(examples) do
  print(("== %s"):format(ex))
  local ok = os.execute(("env -u ACHIEVERS_BASE_URL %s %s %s"):format(env, lua, ex))
  if ok ~= true and ok ~= 0 then
    io.stderr:write("demo failed: " .. ex .. "\n")
    os.exit(1)
  end
end
print("demo: all examples ran")
