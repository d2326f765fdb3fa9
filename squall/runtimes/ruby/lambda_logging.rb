# frozen_string_literal: true

# Function logs. `puts` / $stdout / $stderr go to the log unchanged. As in AWS's
# Ruby runtime, a Logger created on $stdout or $stderr gets a formatter that adds
# the request id:
#
#   I, [2024-01-01T00:00:00.123456 #42]  INFO 3f5c...-... -- : message
#
# or, with AWS_LAMBDA_LOG_FORMAT=JSON, one JSON object per entry. A formatter the
# function sets itself (formatter: or #formatter=) takes precedence.

require 'json'
require 'logger'
require_relative 'lambda_errors'

module SquallRuntime
  # The request id of the invocation running now (AWS's runtime keeps it in this global).
  def self.request_id
    $_global_aws_request_id # rubocop:disable Style/GlobalVars
  end

  # An unhandled error as AWS's runtime logs it: a line saying where it came
  # from, then the error document, pretty-printed.
  def self.log_error(message, error)
    $stdout.puts(message)
    $stdout.puts(error.to_pretty_json)
  rescue StandardError
    nil
  end

  class LogFormatter < Logger::Formatter
    def call(severity, time, progname, msg)
      line = format('%<sev>s, [%<time>s #%<pid>d] %<severity>5s %<rid>s -- %<prog>s: %<msg>s',
                    sev: severity.to_s[0, 1], time: format_datetime(time), pid: Process.pid,
                    severity: severity, rid: SquallRuntime.request_id, prog: progname, msg: msg2str(msg))
      "#{SquallRuntime.utf8(line)}\n"
    end
  end

  class JsonLogFormatter < Logger::Formatter
    def call(severity, time, progname, msg)
      entry = {
        timestamp: time.utc.strftime('%Y-%m-%dT%H:%M:%S.%6NZ'),
        level: severity,
        message: SquallRuntime.utf8(msg.is_a?(Exception) ? msg.message : msg2str(msg)),
        requestId: SquallRuntime.request_id
      }
      entry[:logger] = SquallRuntime.utf8(progname) unless progname.nil? || progname.to_s.empty?
      if msg.is_a?(Exception)
        entry[:errorType] = msg.class.to_s
        entry[:errorMessage] = SquallRuntime.utf8(msg.message)
        entry[:stackTrace] = Array(msg.backtrace).map { |l| SquallRuntime.utf8(l) }
      end
      "#{JSON.generate(entry.compact)}\n"
    end
  end

  module LoggerPatch
    def initialize(logdev, *args, **kwargs, &block)
      super
      return unless [$stdout, $stderr, STDOUT, STDERR].any? { |io| logdev.equal?(io) }

      lambda_formatter = ENV['AWS_LAMBDA_LOG_FORMAT'].to_s.casecmp?('JSON') ? JsonLogFormatter.new : LogFormatter.new
      lambda_formatter.datetime_format = @default_formatter.datetime_format if @default_formatter
      @default_formatter = lambda_formatter
    end
  end

  Logger.prepend(LoggerPatch)
end
