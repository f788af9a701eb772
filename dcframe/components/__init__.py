"""Built-in components; they are registered through the same door as plugins."""
