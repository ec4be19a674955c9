"""Gateway simulator: radio model, gateway batching and MQTT publishing in each supported format."""
