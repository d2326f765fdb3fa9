# frozen_string_literal: true

# Squall's Ruby runtime (ruby3.2 / ruby3.3 / ruby3.4 functions).
#
#   ruby --disable-gems /path/to/squall/runtimes/ruby/bootstrap.rb   (or without --disable-gems)
#
# cwd = the function's code directory, with Lambda's environment
# (AWS_LAMBDA_RUNTIME_API=host:port, _HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_*,
# AWS_LAMBDA_LOG_*, AWS_REGION). It loads the handler, then serves invocations
# from the Lambda Runtime API until the process is stopped; behaviour visible
# to the function follows AWS's Ruby runtime (aws_lambda_ric).
#
# Standard library only, Ruby 3.1 or newer. The directory of this file may be
# mounted anywhere (/var/runtime in the sandbox): the other files are loaded
# with require_relative, and the directory is never put on the load path.

$stdout.sync = true
$stderr.sync = true

unless defined?(Gem)
  # Started with `ruby --disable-gems`: loading RubyGems costs ~70 ms, and the
  # load path (with vendored gems, see setup_load_path) serves most functions
  # without it. RubyGems then loads on first need: a require the load path cannot
  # satisfy (bundled and system gems, GEM_PATH), Kernel#gem, or the Gem constant.
  # What the interpreter loads besides RubyGems is loaded as usual.
  %w[error_highlight did_you_mean syntax_suggest/core_ext].each do |feature|
    require feature
  rescue LoadError
    nil
  end

  module SquallRuntime
    module RubyGemsOnDemand
      @pending = true

      # => true when RubyGems was loaded now.
      def self.load!
        return false unless @pending && Object.autoload?(:Gem)

        @pending = false
        Kernel.send(:remove_method, :gem) # RubyGems defines its own
        Object.const_get(:Gem) # the autoload
        true
      rescue LoadError, NameError
        false
      end
    end
  end

  Object.autoload(:Gem, 'rubygems')

  # In Kernel itself, as RubyGems does it: RubyGems' Kernel#require then replaces
  # this one and calls it as gem_original_require. Named like RubyGems' own frames,
  # so that backtraces keep them as frames of user code.
  module Kernel
    alias_method :squall_original_require, :require
    private :squall_original_require

    module_eval(<<~'RUBY', '<internal:squall/rubygems_on_demand>', 1)
      def require(path)
        # RubyGems' own files (and Bundler's, which load them) expect RubyGems loaded.
        SquallRuntime::RubyGemsOnDemand.load! if path.to_s.start_with?('rubygems', 'bundler')
        squall_original_require(path)
      rescue LoadError => e
        raise unless e.path == path.to_s && SquallRuntime::RubyGemsOnDemand.load!

        require(path) # RubyGems' Kernel#require now
      end

      def gem(...)
        SquallRuntime::RubyGemsOnDemand.load!
        raise NoMethodError, "undefined method `gem' (RubyGems is not loaded)" if Kernel.instance_method(:gem).source_location&.first == __FILE__

        gem(...) # RubyGems' Kernel#gem now
      end
    RUBY
    private :require, :gem
  end
end

require_relative 'runtime_api_client'
require_relative 'lambda_errors'
require_relative 'lambda_context'
require_relative 'lambda_handler'
require_relative 'lambda_logging'

module SquallRuntime
  INIT_ERROR_EXIT = 252 # exit(-4) in AWS's runtime
  CRITICAL_ERROR_EXIT = 255 # exit(-1)

  class << self
    def main
      task_root = ENV['LAMBDA_TASK_ROOT']
      task_root = Dir.pwd if task_root.nil? || task_root.empty?
      client = RuntimeApiClient.new(ENV['AWS_LAMBDA_RUNTIME_API'])
      handler = init(client, task_root, ENV['_HANDLER'])
      loop { serve_one(client, handler) }
    rescue RuntimeApiGone => e
      warn("squall ruby runtime: the Runtime API is unavailable (#{e.message}); exiting")
      exit(1)
    end

    # The code directory, then vendored gems (bundle install --path vendor/bundle),
    # then layer code (/opt/ruby/lib, /opt/ruby/gems) ahead of the standard library.
    def setup_load_path(task_root)
      gem_dirs = Dir.glob(File.join(task_root, 'vendor', 'bundle', 'ruby', '*')).sort +
                 Dir.glob('/opt/ruby/gems/*').sort
      libs = [task_root]
      libs.concat(gem_dirs.flat_map { |dir| Dir.glob(File.join(dir, 'gems', '*', 'lib')).sort })
      libs << '/opt/ruby/lib' if File.directory?('/opt/ruby/lib')
      libs.reject! { |dir| $LOAD_PATH.include?(dir) }
      $LOAD_PATH.unshift(*libs)
      return if gem_dirs.empty?

      # Also let RubyGems (`gem 'x'`, bundler/setup) find the vendored specifications.
      ENV['GEM_PATH'] = (gem_dirs + ENV['GEM_PATH'].to_s.split(File::PATH_SEPARATOR)).uniq.join(File::PATH_SEPARATOR)
      # (not yet loaded: RubyGems reads GEM_PATH when it loads)
      Gem.clear_paths if defined?(Gem) && !Object.autoload?(:Gem) && Gem.respond_to?(:clear_paths)
    end

    private

    def init(client, task_root, handler_spec)
      setup_load_path(task_root)
      handler = Handler.new(handler_spec)
      handler.load(task_root)
      handler
    rescue Exception => e # rubocop:disable Lint/RescueException -- LoadError, SyntaxError, anything the file raises
      error = LambdaError.new(e, 'Init')
      log_error("Init error when loading handler #{handler_spec}", error)
      client.post_init_error(error)
      exit(INIT_ERROR_EXIT)
    end

    def serve_one(client, handler)
      request_id, raw = next_invocation(client)
      begin
        event = AwsLambda::Marshaller.marshall_request(raw)
        context = LambdaContext.new(raw)
      rescue StandardError => e
        error = UnmarshalError.new(e)
        log_error('Error decoding the invocation', error)
        client.post_error(request_id, error)
        return
      end
      body, content_type = handler.call(event, context)
      client.post_response(request_id, body, content_type)
    rescue HandlerError => e
      log_error('Error raised from handler method', e)
      client.post_error(request_id, e)
    rescue HandlerCriticalError => e
      log_error('Critical exception from handler', e)
      client.post_error(request_id, e)
      exit(CRITICAL_ERROR_EXIT)
    end

    def next_invocation(client)
      request_id, raw = client.next_invocation
      $_global_aws_request_id = request_id # rubocop:disable Style/GlobalVars
      trace_id = raw['Lambda-Runtime-Trace-Id']
      if trace_id && !trace_id.empty?
        ENV['_X_AMZN_TRACE_ID'] = trace_id
      else
        ENV.delete('_X_AMZN_TRACE_ID')
      end
      [request_id, raw]
    rescue SignalException # stopped while waiting for work
      exit(0)
    end
  end
end

SquallRuntime.main if $PROGRAM_NAME == __FILE__
