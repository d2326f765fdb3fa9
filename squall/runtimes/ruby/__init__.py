"""Squall's built-in Ruby runtime (ruby3.x): bootstrap.rb and the files it requires."""
