// The few lines of test bookkeeping every C++ kernel test shares: count checks and failures,
// print the first failures (not thousands of them), and let main() turn the count into an
// exit code.
#pragma once

#include <cstdio>
#include <string>

inline int g_failures = 0;
inline int g_checks = 0;

inline void fail(const std::string& what) {
    if (++g_failures <= 40) std::printf("FAIL: %s\n", what.c_str());
}
