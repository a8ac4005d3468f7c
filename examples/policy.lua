-- Ferry example policy. Events and the `kumo` module follow KumoMTA's Lua API.
local kumo = require 'kumo'

-- Runs for every message received over SMTP, before it is written to the spool.
kumo.on('smtp_server_message_received', function(msg)
  -- Honour an X-Schedule header (delivery windows, expiry) and copy the Tenant header to meta.
  msg:import_scheduling_header('X-Schedule')
  msg:import_x_headers { 'tenant' }
end)
