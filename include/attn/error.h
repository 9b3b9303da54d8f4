// Exceptions thrown by attn for user errors (bad shapes, bad arguments,
// malformed files). The library never aborts on user input: every check ends
// in one of these, with a message naming the argument and the shapes.
#pragma once

#include <stdexcept>
#include <string>

namespace attn {

// Base of every exception attn throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A tensor of the wrong rank or size, or an inconsistent set of shapes.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An argument outside its valid range (dropout p, num_heads, ...).
class ArgumentError : public Error {
 public:
  using Error::Error;
};

// A missing, unreadable or malformed file.
class IoError : public Error {
 public:
  using Error::Error;
};

}  // namespace attn
