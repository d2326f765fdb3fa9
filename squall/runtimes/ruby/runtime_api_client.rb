# frozen_string_literal: true

# The runtime's side of the Lambda Runtime API (2018-06-01).
#
# One Net::HTTP connection, opened once and kept alive for every request of the
# process: GET /runtime/invocation/next (a long poll, so no read timeout),
# POST /runtime/invocation/{id}/response|error and POST /runtime/init/error.
# Net::HTTP sets TCP_NODELAY on its sockets, so the header write followed by the
# body write of a POST is not held back by Nagle's algorithm; POSTs are still
# written with a single write (SingleWritePost): one segment, one wake-up of the
# server, and one fewer loopback send per request.

require 'net/http'

module SquallRuntime
  # The Runtime API refused us or went away: the process cannot continue.
  class RuntimeApiGone < StandardError; end

  # A POST whose request line, headers and body leave in one write.
  class SingleWritePost < Net::HTTP::Post
    # Stands in for the socket while Net::HTTP renders the request head.
    class HeadBuffer
      attr_reader :data

      def initialize
        @data = String.new(encoding: Encoding::BINARY)
      end

      def write(str)
        @data << str.b
        str.bytesize
      end
    end

    # Overrides Net::HTTPGenericRequest#exec (internal, stable from Ruby 2.x to 3.4);
    # anything unusual falls back to Net::HTTP's own two writes.
    def exec(sock, ver, path)
      expects_continue = sock.respond_to?(:continue_timeout) && sock.continue_timeout
      return super if !body.is_a?(String) || expects_continue || !respond_to?(:write_header, true)

      self.content_length = body.bytesize
      delete('Transfer-Encoding')
      head = HeadBuffer.new
      write_header(head, ver, path)
      sock.write(head.data << body.b)
    end
  end

  class RuntimeApiClient
    API_VERSION = '2018-06-01'
    USER_AGENT = "squall-ruby-runtime/#{RUBY_VERSION}".freeze
    # Net::HTTP reconnects when a connection has been idle longer than this; the
    # handler may run for up to 15 minutes between two requests.
    KEEP_ALIVE_SECONDS = 24 * 3600
    MAX_XRAY_CAUSE_BYTES = 64 * 1024 # optional header; AWS's client allows up to 1 MiB

    def initialize(address)
      host, port = split_address(address)
      @prefix = "/#{API_VERSION}/runtime"
      # The third argument nil: never route the Runtime API through $http_proxy.
      @http = Net::HTTP.new(host, port, nil)
      @http.open_timeout = 10
      @http.read_timeout = nil # /next blocks until an event arrives
      @http.write_timeout = nil
      @http.keep_alive_timeout = KEEP_ALIVE_SECONDS
      @headers = { 'User-Agent' => USER_AGENT, 'Accept' => '*/*', 'Accept-Encoding' => 'identity' }.freeze
    end

    # => [request_id, Net::HTTPResponse] (headers and body of the event).
    def next_invocation
      response = request(Net::HTTP::Get.new("#{@prefix}/invocation/next", @headers))
      unless response.is_a?(Net::HTTPSuccess)
        raise RuntimeApiGone, "Received #{response.code} when waiting for next invocation."
      end

      request_id = response['Lambda-Runtime-Aws-Request-Id']
      raise RuntimeApiGone, 'The next invocation has no Lambda-Runtime-Aws-Request-Id header.' if request_id.nil? || request_id.empty?

      [request_id, response]
    end

    def post_response(request_id, body, content_type)
      post("#{@prefix}/invocation/#{request_id}/response", body, 'Content-Type' => content_type)
    end

    # error: a SquallRuntime::LambdaError (or anything with to_lambda_response / header_error_type).
    def post_error(request_id, error)
      post("#{@prefix}/invocation/#{request_id}/error", error.to_json_document, error_headers(error))
    end

    def post_init_error(error)
      post("#{@prefix}/init/error", error.to_json_document, error_headers(error))
    end

    def close
      @http.finish if @http.started?
    rescue IOError, SystemCallError
      nil
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
      req = SingleWritePost.new(path, @headers.merge(headers))
      req.body = body
      response = request(req)
      # 202 normally; 4xx (unknown id, answered twice, too large) leave the loop
      # running as AWS's client does; 5xx means "container error, exit now".
      raise RuntimeApiGone, "Received #{response.code} from #{path}." if response.code.to_i >= 500

      response
    end

    def request(req)
      @http.start unless @http.started?
      @http.request(req)
    rescue RuntimeApiGone
      raise
    rescue StandardError => e
      raise RuntimeApiGone, "#{e.class}: #{e.message}"
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
