"""Events: the catalog of detail-types, the EventBridge envelope, resources, samples. Pure."""
