-- The guide "Create an Achievement": with a system token, upload an image, then post an
-- achievement with participants and points (each participant gets the points).
--
-- Without ACHIEVERS_BASE_URL it runs against an in-process sandbox.
local achievers = require("achievers")

local sb
local base_url = os.getenv("ACHIEVERS_BASE_URL")
local client_id, client_secret = os.getenv("ACHIEVERS_CLIENT_ID"), os.getenv("ACHIEVERS_CLIENT_SECRET")
if not base_url then
  sb = require("achievers.sandbox").start {}
  base_url, client_id, client_secret = sb.url, sb.client_id, sb.client_secret
end

local client = achievers.client {
  base_url = base_url, client_id = client_id, client_secret = client_secret,
  scope = { "read", "write" },
}

-- an image: a file given on the command line, or a tiny generated 1x1 GIF
local upload, err
if arg[1] then
  upload, err = client:upload { file = arg[1] }
else
  local gif = "GIF89a\1\0\1\0\128\0\0\255\255\255\0\0\0!\249\4\1\0\0\0\0,\0\0\0\0\1\0\1\0\0\2\2D\1\0;"
  upload, err = client:upload { data = gif, filename = "trophy.gif", content_type = "image/gif" }
end
if not upload then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(("uploaded image %s (%d bytes)"):format(tostring(upload.fileUploadId), upload.size or 0))

local achievement, aerr = client:create_achievement {
  participants = { "adele.olson", "brady.garfinkel" },
  description = "Shipped the Q3 release",
  dateAchieved = os.date("!%Y-%m-%d"),
  points = 100,
  fileUploadId = upload.fileUploadId,
}
if not achievement then
  io.stderr:write(tostring(aerr), "\n")
  os.exit(1)
end
print(("achievement %d posted: %s"):format(achievement.id, achievement.newsfeedEventURL or ""))

if sb then sb:stop() end
