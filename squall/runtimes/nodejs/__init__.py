"""Squall's built-in Node.js runtime client (nodejs18.x / nodejs20.x / nodejs22.x); entry point bootstrap.mjs."""
