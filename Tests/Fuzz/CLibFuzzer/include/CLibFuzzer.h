#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry point for programs that keep their own main (llvm.org/docs/LibFuzzer.html,
// "Using libFuzzer as a library"). SwiftPM renames an executable's main to <Target>_main in debug
// builds, so the harness calls the driver itself instead of relying on libFuzzer's main.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
