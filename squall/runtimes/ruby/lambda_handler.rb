# frozen_string_literal: true

# Handler resolution and (un)marshalling, with the conventions of AWS's Ruby runtime.
#
# _HANDLER is "FILE.METHOD" or "FILE.CLASS.METHOD": FILE is a path without ".rb"
# relative to the load path (the code directory first, e.g. "app" or "dir/app"),
# CLASS an optional constant path ("Module::Class") and METHOD a method taking the
# keyword arguments event: and context: (a top-level method, or a class/module
# method of CLASS).  The file is loaded once, at init; METHOD and CLASS are looked
# up on every invoke, so a missing one is reported by the invocation
# (Function<NoMethodError> / Function<NameError>) as on AWS.

require 'json'
require 'stringio'
require_relative 'lambda_errors'

# AWS's runtime documents this class as replaceable by user code (define
# AwsLambda::Marshaller.marshall_request / .marshall_response in the function).
module AwsLambda
  class Marshaller
    class << self
      # The event: the JSON-decoded body (raw bytes unless the body is JSON).
      def marshall_request(raw_request)
        content_type = raw_request['Content-Type']
        if content_type.nil? || content_type.start_with?('application/json')
          JSON.parse(raw_request.body.to_s)
        else
          raw_request.body
        end
      end

      # The response body: to_json of the handler's value, or [body, content_type];
      # an IO / StringIO is returned as raw bytes ("application/unknown").
      def marshall_response(method_response)
        case method_response
        when StringIO, IO
          [method_response, 'application/unknown']
        else
          method_response.to_json
        end
      end
    end
  end
end

module SquallRuntime
  class Handler
    attr_reader :spec, :file_name, :class_name, :method_name

    def initialize(spec)
      @spec = spec.to_s
      parts = @spec.split('.')
      case parts.size
      when 2 then @file_name, @method_name = parts
      when 3 then @file_name, @class_name, @method_name = parts
      else
        raise ArgumentError,
              "Invalid handler #{parts.inspect} (from #{@spec.inspect}): it must be FILENAME.METHOD or " \
              'FILENAME.CLASS.METHOD, where FILENAME names an existing Ruby source file FILENAME.rb, ' \
              'CLASS is an optional module/class namespace and METHOD a callable method ' \
              '(a class-level method when CLASS is given).'
      end
    end

    # Loads the handler's file (init). A file in the code directory is required by
    # its absolute path, so that a name such as "json" or "logger" cannot resolve
    # to a library that is already loaded; any other name goes through the load
    # path (layers, vendored gems) as on AWS.
    def load(task_root)
      local = File.expand_path("#{@file_name}.rb", task_root)
      if File.file?(local)
        require local
      else
        require @file_name
      end
    end

    # Runs the handler; => [body String, content type].
    # Raises HandlerError or HandlerCriticalError.
    def call(event, context)
      receiver = @class_name ? Object.const_get(@class_name) : TOPLEVEL_BINDING.receiver
      response = receiver.__send__(@method_name, event: event, context: context)
      # Marshalling is part of the user's invocation: a value to_json cannot
      # encode (invalid UTF-8, NaN) is reported as Function<JSON::GeneratorError>.
      body, content_type = AwsLambda::Marshaller.marshall_response(response)
      body = body.read if body.respond_to?(:read)
      [body.to_s, content_type || 'application/json']
    rescue NoMethodError, NameError => e # a missing handler method or class is fatal on AWS
      raise HandlerCriticalError, e
    rescue StandardError => e
      raise HandlerError, e
    rescue Exception => e # rubocop:disable Lint/RescueException -- SystemExit, SystemStackError, ScriptError ...
      raise HandlerCriticalError, e
    end
  end
end
