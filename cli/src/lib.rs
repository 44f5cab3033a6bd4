//! The evfold command-line tool.
