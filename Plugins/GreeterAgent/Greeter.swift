// GreeterAgent (in progress).
