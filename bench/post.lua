-- POST /echo with a body of args[1] bytes (default 4096), Content-Type application/octet-stream.
-- Usage: wrk -s bench/post.lua http://host:port/echo -- 4096
init = function(args)
  local size = tonumber(args[1]) or 4096
  wrk.method = "POST"
  wrk.body = string.rep("x", size)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
