# frozen_string_literal: true

# The context object passed to `handler(event:, context:)`, with the members of
# AWS's Ruby runtime. As there, memory_limit_in_mb is a String, identity and
# client_context are Hashes parsed from their headers (nil when absent), and
# deadline_ms is epoch milliseconds.

require 'json'

class LambdaContext
  attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
              :function_name, :memory_limit_in_mb, :function_version, :identity,
              :client_context, :deadline_ms, :tenant_id

  # headers: anything answering [] with a header name (Net::HTTPResponse, a Hash).
  def initialize(headers)
    @aws_request_id = header(headers, 'Lambda-Runtime-Aws-Request-Id')
    @deadline_ms = header(headers, 'Lambda-Runtime-Deadline-Ms').to_i
    @invoked_function_arn = header(headers, 'Lambda-Runtime-Invoked-Function-Arn')
    @tenant_id = header(headers, 'Lambda-Runtime-Aws-Tenant-Id')
    @function_name = ENV['AWS_LAMBDA_FUNCTION_NAME']
    @function_version = ENV['AWS_LAMBDA_FUNCTION_VERSION']
    @memory_limit_in_mb = ENV['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']
    @log_group_name = ENV['AWS_LAMBDA_LOG_GROUP_NAME']
    @log_stream_name = ENV['AWS_LAMBDA_LOG_STREAM_NAME']
    identity = header(headers, 'Lambda-Runtime-Cognito-Identity')
    @identity = JSON.parse(identity) if identity && !identity.empty?
    client_context = header(headers, 'Lambda-Runtime-Client-Context')
    @client_context = JSON.parse(client_context) if client_context && !client_context.empty?
  end

  def get_remaining_time_in_millis # rubocop:disable Naming/AccessorMethodName -- AWS's name
    remaining = @deadline_ms - Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
    remaining.positive? ? remaining : 0
  end

  private

  # Header values arrive as bytes; they are UTF-8 text.
  def header(headers, name)
    value = headers[name]
    value.is_a?(String) ? value.dup.force_encoding(Encoding::UTF_8) : value
  end
end
