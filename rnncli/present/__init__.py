"""Terminal rendering (rich): pictures drawn with characters and colours."""
