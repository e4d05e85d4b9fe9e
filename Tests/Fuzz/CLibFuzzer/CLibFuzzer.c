// SwiftPM needs a source file to make a C target; the header is all this target provides.
#include "CLibFuzzer.h"
