"""What wraps every request before routing: CORS."""
