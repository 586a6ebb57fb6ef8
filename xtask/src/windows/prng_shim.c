/*
 * A stand-in for Windows' bcryptprimitives.dll, for Wine versions that lack
 * it (Wine 8, Debian 12's). Rust's standard library imports ProcessPrng from
 * that DLL, so without it no Rust program loads. Test scaffolding only:
 * `cargo xtask windows` compiles it into the smoke suite's temporary
 * directory, next to the executables; it is never shipped.
 */
#include <windows.h>

/* RtlGenRandom, exported by advapi32 under this name (no header declares it). */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fills `data` with `length` random bytes; TRUE on success (ProcessPrng's contract). */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
