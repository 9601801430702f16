namespace Paging.CrashChild;

/// <summary>The write sequence, shared with the test (linked source).</summary>
internal static class CrashWrites
{
    public static (long Page, int Slot) Next(ref ulong rng, long pages)
    {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return ((long)(rng % (ulong)pages), (int)((rng >> 40) & 511));
    }

    /// <summary>Write i's value: its index above a 24-bit check of (i, page, slot), so a torn or stray word fails it.</summary>
    public static ulong Value(long i, long page, int slot) => ((ulong)(i + 1) << 24) | Check(i, page, slot);

    public static ulong Check(long i, long page, int slot) => (((ulong)i * 0x9E3779B97F4A7C15UL) ^ ((ulong)page * 0xC2B2AE3D27D4EB4FUL) ^ (ulong)slot) >> 40;
}
