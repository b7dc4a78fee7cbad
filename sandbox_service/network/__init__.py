"""Network modes of a sandbox: none (loopback only), host, published ports, bridge."""
