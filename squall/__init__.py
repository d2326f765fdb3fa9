"""Squall: self-hosted serverless compute that speaks the AWS Lambda API."""

__version__ = "0.1.0"
