"""Command modules: each defines ``register(app)`` adding its commands to tk."""
