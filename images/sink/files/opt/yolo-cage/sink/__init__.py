"""The yolo-cage test sink: an attacker's server that records everything it receives."""
