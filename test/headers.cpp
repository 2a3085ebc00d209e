// test/headers.cpp: test/headers.c again, as C++: the public headers
// compile as C++ and their extern "C" wrappers are in place (a declaration
// outside one would link to a mangled name and fail).
#include "headers.c"
