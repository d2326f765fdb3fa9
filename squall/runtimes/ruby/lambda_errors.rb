# frozen_string_literal: true

# Error documents in the shape AWS's Ruby runtime posts and logs:
#
#   {"errorMessage": "...", "errorType": "Function<TypeError>",
#    "stackTrace": ["/var/task/function.rb:3:in `handler'"]}
#
# errorType is "<Phase><ExceptionClass>" with Phase "Function" for errors raised
# while running the handler and "Init" for errors while loading it.  The
# Lambda-Runtime-Function-Error-Type header carries the same value for a short
# list of core exception classes and "Function<UserException>" for any other.

require 'json'

module SquallRuntime
  RUNTIME_DIR = File.expand_path(__dir__)
  MAX_FRAMES = 100
  # Exception classes whose name AWS's runtime passes on in the error-type header.
  HEADER_CLASSES = %w[ArgumentError NoMethodError Exception StandardError NameError
                      LoadError SystemExit SystemStackError].freeze

  # Valid UTF-8 for any string (invalid bytes become U+FFFD).
  def self.utf8(value)
    s = value.to_s
    if [Encoding::UTF_8, Encoding::BINARY, Encoding::US_ASCII].include?(s.encoding)
      s.dup.force_encoding(Encoding::UTF_8).scrub("\uFFFD")
    else
      s.encode(Encoding::UTF_8, invalid: :replace, undef: :replace, replace: "\uFFFD")
    end
  rescue StandardError
    s.dup.force_encoding(Encoding::UTF_8).scrub("\uFFFD")
  end

  class LambdaError < StandardError
    attr_reader :original, :error_type, :error_message, :stack_trace

    # original: the exception raised by user code; phase: "Function" or "Init".
    def initialize(original, phase = 'Function')
      @original = original
      @class_name = original.class.to_s
      @error_type = SquallRuntime.utf8("#{phase}<#{@class_name}>")
      @error_message = SquallRuntime.utf8(safe_message(original))
      @locations = user_frames(original)
      @stack_trace = @locations.map { |frame| SquallRuntime.utf8(frame) }
      super(@error_message)
    end

    def header_error_type
      HEADER_CLASSES.include?(@class_name) ? @error_type : 'Function<UserException>'
    end

    def to_lambda_response
      { errorMessage: @error_message, errorType: @error_type, stackTrace: @stack_trace }
    end

    def to_json_document
      JSON.generate(to_lambda_response)
    end

    def to_pretty_json
      JSON.pretty_generate(to_lambda_response)
    end

    # The X-Ray cause document AWS's runtime attaches as a header.
    def xray_cause
      stack = @locations.first(15).map do |frame|
        if frame.respond_to?(:lineno)
          { path: SquallRuntime.utf8(frame.path), line: frame.lineno, label: SquallRuntime.utf8(frame.label) }
        else
          { path: SquallRuntime.utf8(frame) }
        end
      end
      document = {
        working_directory: SquallRuntime.utf8(Dir.pwd),
        paths: gem_paths,
        exceptions: [{ message: @error_message, type: @error_type, stack: stack }]
      }
      JSON.generate(document, ascii_only: true) # a header value: ASCII only
    rescue StandardError
      nil
    end

    private

    def safe_message(error)
      error.message
    rescue Exception # rubocop:disable Lint/RescueException -- a user-defined #message may raise anything
      error.class.to_s
    end

    # The frames of user code: everything up to the first frame of this runtime.
    def user_frames(error)
      frames = error.backtrace_locations || error.backtrace || []
      kept = []
      frames.first(MAX_FRAMES).each do |frame|
        path = frame.respond_to?(:absolute_path) ? (frame.absolute_path || frame.path) : frame.to_s
        break if path.to_s.start_with?("#{RUNTIME_DIR}/")

        kept << frame
      end
      kept
    rescue StandardError
      []
    end

    def gem_paths
      defined?(Gem) ? Gem.path.map { |p| SquallRuntime.utf8(p) } : []
    rescue StandardError
      []
    end
  end

  # Raised by user code while the handler ran; the runtime keeps serving.
  class HandlerError < LambdaError; end

  # Raised by user code with a class AWS treats as fatal for the environment
  # (NoMethodError, NameError, anything that is not a StandardError): the runtime
  # posts the error, then exits.
  class HandlerCriticalError < LambdaError; end

  # The event or its headers could not be decoded; the runtime keeps serving.
  class UnmarshalError < LambdaError
    def initialize(original)
      super(original, 'Function')
      @error_type = 'Runtime.UnmarshalError'
      detail = @error_message.length > 1024 ? "#{@error_message[0, 1024]}..." : @error_message
      @error_message = "Unable to unmarshal input: #{detail}"
      @locations = []
      @stack_trace = []
    end

    def header_error_type
      @error_type
    end
  end
end
