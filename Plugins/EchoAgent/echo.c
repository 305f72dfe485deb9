// EchoAgent (in progress).
