namespace Paging.Interop;

/// <summary>/proc/meminfo fields (the huge page pool); the one reader the runtime, the harness and the tests share.</summary>
internal static class ProcMeminfo
{
    /// <summary>The first number of a field ("HugePages_Free" → a page count, "MemFree" → KiB), or -1 when absent
    /// or unreadable.</summary>
    public static long Read(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                {
                    var value = line[(field.Length + 1)..].Trim().Split(' ')[0];
                    return long.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long n) ? n : -1;
                }
            }
        }
        catch (IOException)
        {
        }
        return -1;
    }
}
