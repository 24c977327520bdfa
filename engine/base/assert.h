// Invariant checks that stay on in release builds. A broken invariant in state this process
// produced stops the process; it then recovers from its store. Money is never patched in place.
#pragma once

#include <cstdio>
#include <cstdlib>

#define YRD_ASSERT(condition)                                                                  \
  do {                                                                                         \
    if (!(condition)) [[unlikely]] {                                                           \
      std::fprintf(stderr,                                                                     \
                   "{\"level\":\"critical\",\"event\":\"invariant_broken\",\"check\":\"%s\","  \
                   "\"at\":\"%s:%d\",\"action\":\"the process stops and recovers from its "    \
                   "store on restart; report this line to the engine's maintainers\"}\n",      \
                   #condition, __FILE__, __LINE__);                                            \
      std::abort();                                                                            \
    }                                                                                          \
  } while (false)
