"""Stateful protocols as pure state machines (sans-I/O, in the style of h11): a driver in `net/` feeds them
frames and acts on what they return. Nothing here touches a socket, a clock or a file."""
