# Middle service of the runtime ground-truth tests: WEBrick (a thread per connection) and
# Net::HTTP (protocol in node_mid.js). A background thread calls /timer/<k> every TIMER_MS.
require 'webrick'
require 'net/http'

port, LEAF, timer_ms = ARGV.map(&:to_i)

def call_leaf(path, traceparent)
  Net::HTTP.start('127.0.0.1', LEAF, open_timeout: 10, read_timeout: 30) do |http|
    req = Net::HTTP::Get.new(path)
    req['traceparent'] = traceparent if traceparent
    http.request(req).code
  end
end

server = WEBrick::HTTPServer.new(BindAddress: '127.0.0.1', Port: port, MaxClients: 64,
                                 Logger: WEBrick::Log.new(File::NULL), AccessLog: [])
server.mount_proc('/work/') do |req, res|
  parts = req.path.split('/')
  if parts.length != 4 || !%w[fwd drop].include?(parts[2])
    res.status = 404
    next
  end
  n = (req.query['n'] || '1').to_i
  pause = (req.query['sleep'] || '0').to_i
  tp = parts[2] == 'fwd' ? req['traceparent'] : nil
  n.times do |i|
    sleep(pause / 1000.0) if pause > 0 && i == n - 1
    call_leaf("/leaf/#{parts[3]}", tp)
  end
  res.body = "ok\n"
end

Thread.new do
  k = 0
  loop do
    sleep(timer_ms / 1000.0)
    k += 1
    begin
      call_leaf("/timer/#{k}", nil)
    rescue StandardError
      nil
    end
  end
end

trap('TERM') { server.shutdown }
server.start
