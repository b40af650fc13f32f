"""The real-time voice loop: turn-taking, dialog replies, sentence streaming (pure parts)."""
