"""Task sources: procedural (Arithmetic, Countdown) and file-backed (math and code sets)."""
