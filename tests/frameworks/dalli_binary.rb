# Ruby Dalli 3 (binary protocol) and Rack::Session::Dalli against one memcache server.
# Usage: ruby dalli_binary.rb HOST PORT [USER PASSWORD]
require 'dalli'
require 'rack'
require 'rack/session/dalli'
require 'logger'

Dalli.logger = Logger.new($stderr)

server = "#{ARGV[0]}:#{ARGV[1]}"
options = { namespace: "dalli-#{rand(1 << 40)}", socket_timeout: 5 }
options.merge!(username: ARGV[2], password: ARGV[3]) if ARGV.length > 3
dc = Dalli::Client.new(server, options)

def check(condition, what)
  raise "check failed: #{what}" unless condition
end

check(dc.set('k', 'v'), 'set')
check(dc.get('k') == 'v', 'get')
check(dc.get('missing').nil?, 'miss')
dc.set('h', { 'name' => 'Ada' })
check(dc.get('h') == { 'name' => 'Ada' }, 'marshalled value')
check(dc.get_multi('k', 'h', 'missing') == { 'k' => 'v', 'h' => { 'name' => 'Ada' } }, 'get_multi')

check(dc.add('a', '1', 0, raw: true), 'add')
check(!dc.add('a', '2', 0, raw: true), 'add of a present key')
check(dc.replace('a', '3', 0, raw: true), 'replace')
dc.replace('not-there', 'x')
check(dc.get('not-there').nil?, 'replace of a missing key stores nothing')
check(dc.append('a', '4'), 'append')
check(dc.prepend('a', '2'), 'prepend')
check(dc.get('a', raw: true) == '234', 'append/prepend')

# Rails' MemCacheStore counters: incr with an initial value and a TTL creates the key.
check(dc.incr('hits', 1, 60, 10) == 10, 'incr creates with the initial value')
check(dc.incr('hits', 5) == 15, 'incr')
check(dc.decr('hits', 100) == 0, 'decr floors at 0')
check(dc.incr('no-counter', 1).nil?, 'incr of a missing key without initial is nil')

check(dc.fetch('computed') { 'fresh' } == 'fresh', 'fetch miss')
check(dc.fetch('computed') { 'other' } == 'fresh', 'fetch hit')

dc.set('c', 'old')
check(dc.cas('c') { |v| v + '!' }, 'cas block')
check(dc.get('c') == 'old!', 'cas result')
check(!dc.cas('not-there') { |v| v }, 'cas of a missing key')
value, cas = dc.get_cas('c')
check(value == 'old!' && cas.positive?, 'get_cas')
check(dc.set_cas('c', 'new', cas), 'set_cas')
check(!dc.set_cas('c', 'newer', cas), 'stale set_cas')

check(dc.touch('c', 60), 'touch')
check(!dc.touch('not-there', 60), 'touch of a missing key')
check(dc.delete('c'), 'delete')
check(!dc.delete('c'), 'delete of a missing key')

# Pipelined quiet sets, then a multi-get.
dc.multi do
  10.times { |i| dc.set("q#{i}", i) }
end
check(dc.get_multi((0...10).map { |i| "q#{i}" }).values.sort == (0...10).to_a, 'quiet sets')

check(dc.version.values.first.to_s.start_with?('1.'), 'version')
check(dc.stats.values.first['pid'], 'stats')

# Rack sessions: a counter in the session, carried by the cookie across requests.
app = lambda do |env|
  session = env['rack.session']
  session['count'] = (session['count'] || 0) + 1
  [200, { 'content-type' => 'text/plain' }, [session['count'].to_s]]
end
session_options = { memcache_server: server, namespace: "rack-#{rand(1 << 40)}" }
session_options.merge!(username: ARGV[2], password: ARGV[3]) if ARGV.length > 3
stack = Rack::Session::Dalli.new(app, session_options)
request = Rack::MockRequest.new(stack)
first = request.get('/')
check(first.body == '1', 'first request')
cookie = first['set-cookie'] || first['Set-Cookie']
check(cookie, 'session cookie')
second = request.get('/', 'HTTP_COOKIE' => cookie.split(';').first)
check(second.body == '2', "session kept across requests (#{second.body})")

puts 'dalli ok'
