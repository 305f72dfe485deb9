// ProtoAgent (in progress).
