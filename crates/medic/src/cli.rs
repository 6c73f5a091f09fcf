//! The command line: parses arguments and runs the commands.
