# frozen_string_literal: true

# The runtime's side of the Lambda Runtime API (2018-06-01).
#
# A small HTTP/1.1 client over one persistent TCP connection, opened once and
# kept alive for every request of the process: GET /runtime/invocation/next (a
# long poll, so no read timeout), POST /runtime/invocation/{id}/response|error
# and POST /runtime/init/error. Each request leaves in a single write on a
# TCP_NODELAY socket. A connection the server closed between two requests (EOF
# or reset before any byte of the response) is replaced once, and the request
# sent again. Responses carry Content-Length (Squall's Runtime API always sends
# it); chunked bodies and bodies delimited by the end of the connection are read
# too. Only 'socket' is required: Net::HTTP costs ~50 ms of start-up and
# ~0.3 ms of CPU per request.

require 'socket'

module SquallRuntime
  # The Runtime API refused us or went away: the process cannot continue.
  class RuntimeApiGone < StandardError; end

  # One response of the Runtime API, with the reading side of Net::HTTPResponse
  # (AWS's runtime hands a Net::HTTPResponse to AwsLambda::Marshaller, which the
  # function may replace): code (a String), body, [] with any header name case,
  # key?, each_header, to_hash, content_type. Header values and the body are bytes.
  class RuntimeResponse
    attr_reader :status, :body

    # headers: lower-case name => value (repeated fields joined with ", ").
    def initialize(status, headers, body)
      @status = status
      @headers = headers
      @body = body
    end

    def code
      @status.to_s
    end

    def success?
      @status >= 200 && @status < 300
    end

    def [](name)
      @headers[name.to_s.downcase]
    end

    def key?(name)
      @headers.key?(name.to_s.downcase)
    end

    def each_header(&block)
      return @headers.each_pair unless block

      @headers.each_pair(&block)
    end
    alias each each_header

    def to_hash
      @headers.transform_values { |value| [value] }
    end

    def content_type
      value = @headers['content-type']
      value && value.split(';', 2).first.strip.downcase
    end

    def inspect
      "#<#{self.class.name} #{@status} (#{@body.bytesize} bytes)>"
    end
  end

  class RuntimeApiClient
    API_VERSION = '2018-06-01'
    USER_AGENT = "squall-ruby-runtime/#{RUBY_VERSION}".freeze
    MAX_XRAY_CAUSE_BYTES = 64 * 1024 # optional header; AWS's client allows up to 1 MiB
    CONNECT_TIMEOUT = 10
    MAX_LINE = 1024 * 1024 # a status, header or chunk-size line
    MAX_HEADERS = 1000
    CRLF = "\r\n"
    # The server may close an idle keep-alive connection; these, before any byte
    # of the response, mean the request was not handled: send it again once.
    STALE_ERRORS = [EOFError, Errno::ECONNRESET, Errno::EPIPE, Errno::ECONNABORTED].freeze

    # A response that does not parse; never retried.
    class ProtocolError < StandardError; end

    def initialize(address)
      @host, @port = split_address(address)
      @prefix = "/#{API_VERSION}/runtime"
      host = @host.include?(':') ? "[#{@host}]" : @host
      @common_headers = "Host: #{host}:#{@port}\r\nUser-Agent: #{USER_AGENT}\r\nAccept: */*\r\n".b.freeze
      @sock = nil
    end

    # => [request_id, RuntimeResponse] (headers and body of the event).
    def next_invocation
      response = request('GET', "#{@prefix}/invocation/next", nil, nil)
      raise RuntimeApiGone, "Received #{response.code} when waiting for next invocation." unless response.success?

      request_id = response['Lambda-Runtime-Aws-Request-Id']
      raise RuntimeApiGone, 'The next invocation has no Lambda-Runtime-Aws-Request-Id header.' if request_id.nil? || request_id.empty?

      [request_id, response]
    end

    def post_response(request_id, body, content_type)
      post("#{@prefix}/invocation/#{request_id}/response", body, 'Content-Type' => content_type)
    end

    # error: a SquallRuntime::LambdaError (or anything with to_json_document / header_error_type / xray_cause).
    def post_error(request_id, error)
      post("#{@prefix}/invocation/#{request_id}/error", error.to_json_document, error_headers(error))
    end

    def post_init_error(error)
      post("#{@prefix}/init/error", error.to_json_document, error_headers(error))
    end

    def close
      disconnect
    end

    private

    def error_headers(error)
      headers = {
        'Content-Type' => 'application/vnd.aws.lambda.error+json',
        'Lambda-Runtime-Function-Error-Type' => error.header_error_type
      }
      cause = error.xray_cause
      headers['Lambda-Runtime-Function-XRay-Error-Cause'] = cause if cause && cause.bytesize < MAX_XRAY_CAUSE_BYTES
      headers
    end

    def post(path, body, headers)
      response = request('POST', path, body.to_s, headers)
      # 202 normally; 4xx (unknown id, answered twice, too large) leave the loop
      # running as AWS's client does; 5xx means "container error, exit now".
      raise RuntimeApiGone, "Received #{response.code} from #{path}." if response.status >= 500

      response
    end

    # => RuntimeResponse. Raises RuntimeApiGone.
    def request(method, path, body, headers)
      head = render_head(method, path, body, headers)
      retried = false
      begin
        reused = !@sock.nil?
        connect unless reused
        body.nil? || body.empty? ? @sock.write(head) : @sock.write(head, body) # one write(v) call
        status_line = @sock.gets("\n", MAX_LINE)
        raise EOFError, 'the Runtime API closed the connection' if status_line.nil?
      rescue *STALE_ERRORS => e
        disconnect
        raise RuntimeApiGone, "#{e.class}: #{e.message}" if retried || !reused

        retried = true
        retry
      end
      read_response(status_line)
    rescue RuntimeApiGone
      raise
    rescue StandardError => e # SystemCallError, IOError, SocketError, ProtocolError
      disconnect
      raise RuntimeApiGone, "#{e.class}: #{e.message}"
    end

    # The request line and headers, as one binary String.
    def render_head(method, path, body, headers)
      head = String.new("#{method} #{safe_path(path)} HTTP/1.1\r\n", encoding: Encoding::BINARY, capacity: 512)
      head << @common_headers
      headers&.each { |name, value| head << name << ': ' << header_value(value) << CRLF }
      head << "Content-Length: #{body.bytesize}\r\n" if body
      head << CRLF
    end

    # Header values are one line of bytes.
    def header_value(value)
      value = value.to_s.b
      value.match?(/[\r\n\0]/n) ? value.gsub(/[\r\n\0]/n, ' ') : value
    end

    # The request id comes from the server; anything outside visible ASCII is percent-encoded.
    def safe_path(path)
      path = path.b
      path.match?(/[^\x21-\x7e]/n) ? path.gsub(/[^\x21-\x7e]/n) { |c| format('%%%02X', c.ord) } : path
    end

    def connect
      sock = TCPSocket.new(@host, @port, connect_timeout: CONNECT_TIMEOUT)
      sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      sock.binmode
      sock.sync = true
      @sock = sock
    end

    def disconnect
      sock = @sock
      @sock = nil
      sock&.close
    rescue IOError, SystemCallError
      nil
    end

    def read_response(status_line)
      loop do
        status = parse_status(status_line)
        headers = read_headers
        if status >= 100 && status < 200 # 100 Continue and friends: the real response follows
          status_line = @sock.gets("\n", MAX_LINE) or raise EOFError, 'the Runtime API closed the connection'
          next
        end

        body, keep = read_body(status, headers)
        keep &&= keep_alive?(status_line, headers)
        disconnect unless keep
        return RuntimeResponse.new(status, headers, body)
      end
    end

    def parse_status(line)
      m = %r{\AHTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n\z}n.match(line)
      raise ProtocolError, "bad status line #{line[0, 100].inspect}" unless m

      m[2].to_i
    end

    def read_headers
      headers = {}
      MAX_HEADERS.times do
        line = read_line
        return headers if line.empty?

        name, value = line.split(':', 2)
        raise ProtocolError, "bad header line #{line[0, 100].inspect}" if value.nil? || name.empty?

        name = name.strip.downcase
        value = value.strip
        headers[name] = headers.key?(name) ? "#{headers[name]}, #{value}" : value
      end
      raise ProtocolError, 'too many header lines'
    end

    # => [body, whether the connection can carry another request]
    def read_body(status, headers)
      return [String.new(encoding: Encoding::BINARY), true] if status == 204 || status == 304

      if (encoding = headers['transfer-encoding']) && !encoding.casecmp?('identity')
        raise ProtocolError, "unsupported Transfer-Encoding #{encoding}" unless encoding.downcase.end_with?('chunked')

        [read_chunked, true]
      elsif (length = headers['content-length'])
        raise ProtocolError, "bad Content-Length #{length.inspect}" unless length.match?(/\A[0-9]+\z/)

        [read_exactly(length.to_i), true]
      else # delimited by the end of the connection
        [@sock.read || String.new(encoding: Encoding::BINARY), false]
      end
    end

    def read_chunked
      body = String.new(encoding: Encoding::BINARY)
      loop do
        size = read_line.split(';', 2).first.strip
        raise ProtocolError, "bad chunk size #{size[0, 100].inspect}" unless size.match?(/\A\h+\z/)

        size = size.to_i(16)
        break if size.zero?

        body << read_exactly(size)
        raise ProtocolError, 'missing CRLF after a chunk' unless read_line.empty?
      end
      nil until read_line.empty? # trailers
      body
    end

    def read_exactly(length)
      return String.new(encoding: Encoding::BINARY) if length.zero?

      data = @sock.read(length)
      raise EOFError, "the Runtime API closed the connection (#{data.to_s.bytesize} of #{length} bytes)" if data.nil? || data.bytesize < length

      data
    end

    # One line without its line ending.
    def read_line
      line = @sock.gets("\n", MAX_LINE)
      raise EOFError, 'the Runtime API closed the connection' if line.nil?
      raise ProtocolError, 'line too long' unless line.end_with?("\n")

      line.chomp!
      line
    end

    def keep_alive?(status_line, headers)
      connection = headers['connection'].to_s.downcase
      return false if connection.include?('close')

      status_line.start_with?('HTTP/1.1') || connection.include?('keep-alive')
    end

    def split_address(address)
      raise RuntimeApiGone, 'AWS_LAMBDA_RUNTIME_API is not set.' if address.nil? || address.empty?

      if (m = address.match(/\A\[([^\]]+)\]:(\d+)\z/)) # [::1]:9001
        [m[1], m[2].to_i]
      elsif (m = address.match(/\A(.+):(\d+)\z/))
        [m[1], m[2].to_i]
      else
        [address, 80]
      end
    end
  end
end
