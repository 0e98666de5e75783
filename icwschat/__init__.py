"""icwschat: follow Genesys PureConnect (ICWS) chats from the command line."""

__version__ = "0.1.0"
