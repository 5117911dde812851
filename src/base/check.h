// Invariant checks. A broken invariant is a bug: print where and abort (the third error tier of
// docs/architecture.md, "Errors"). abseil 20220623 has no CHECK macros, so we carry these few.
#pragma once

#include <cstdio>
#include <cstdlib>

#define RAFTKV_CHECK(cond)                                                              \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

#define RAFTKV_CHECK_MSG(cond, msg)                                                     \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s: %s\n", __FILE__, __LINE__, #cond, \
                   (msg));                                                              \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

#ifdef NDEBUG
#define RAFTKV_DCHECK(cond) \
  do {                      \
  } while (0)
#else
#define RAFTKV_DCHECK(cond) RAFTKV_CHECK(cond)
#endif
