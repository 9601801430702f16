using System.Diagnostics;
using System.Globalization;
using Paging.Backends;
using Paging.Backends.Compression;
using Paging.Cli;
using Paging.Stores;
using Spectre.Console;

namespace Paging.Pack;

/// <summary>
/// The pack tool: <c>pack IN OUT [--codec lz4|zstd|none] [--level N] [--block 64K]</c> writes a pack
/// (docs/PACK-FORMAT.md) that <c>PageStoreDescriptor.Compressed(path)</c> serves; <c>unpack IN OUT</c> reads one back
/// through the store's strict reader. Both show progress and end with a summary (ratio, MB/s).
/// </summary>
internal static class Program
{
    private const string Usage = """
        usage: Paging.Pack pack IN OUT [--codec lz4|zstd|none] [--level N] [--block SIZE]
               Paging.Pack unpack IN OUT
          --codec   lz4 (default; fastest to decompress), zstd (better ratio), none (zero blocks only)
          --level   codec level (lz4: 1 = fast mode, >1 = HC level, default 9: slower to pack, faster to decode and
                    smaller, up to 12; zstd: 1-22, negative = fast modes, default 3)
          --block   original bytes per block, a power of two from 4K to 1M (default 64K): a fault decompresses at
                    most one block per page it touches, so smaller blocks fault faster, larger ones compress better
        """;

    private static int Main(string[] args)
    {
        try
        {
            return args.Length >= 3 && args[0] == "pack" ? Pack(args[1], args[2], args[3..])
                : args.Length == 3 && args[0] == "unpack" ? Unpack(args[1], args[2])
                : Fail(Usage);
        }
        catch (Exception e) when (e is PageStoreException or IOException or ArgumentException or UnauthorizedAccessException)
        {
            return Fail($"error: {e.Message}");
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }

    private static int Pack(string input, string output, string[] options)
    {
        var codec = PageCodecKind.Lz4;
        int? level = null;
        int block = 64 * 1024;
        for (int i = 0; i < options.Length; i++)
        {
            string Next() => i + 1 < options.Length ? options[++i] : throw new ArgumentException($"{options[i]} needs a value");
            switch (options[i])
            {
                case "--codec":
                    codec = Next() switch
                    {
                        "lz4" => PageCodecKind.Lz4,
                        "zstd" => PageCodecKind.Zstd,
                        "none" => PageCodecKind.None,
                        var c => throw new ArgumentException($"unknown codec '{c}' (lz4, zstd, none)"),
                    };
                    break;
                case "--level":
                    level = int.TryParse(Next(), CultureInfo.InvariantCulture, out int l) ? l : throw new ArgumentException("--level takes an integer");
                    break;
                case "--block":
                    block = ParseSize(Next());
                    break;
                default:
                    throw new ArgumentException($"unknown option '{options[i]}'\n{Usage}");
            }
        }
        long length = new FileInfo(input).Length;
        var watch = Stopwatch.StartNew();
        PackSummary summary = default;
        ProgressConsole.Create().Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"packing {Path.GetFileName(input)} ({codec}, {block / 1024} KiB blocks)", maxValue: Math.Max(1, length));
                using var inStream = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
                using var outStream = new FileStream(output, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20);
                summary = PackWriter.Pack(inStream, outStream, codec, level ?? PackWriter.DefaultLevel(codec), block, done => task.Value = done);
                outStream.Flush(flushToDisk: true);
            });
        double seconds = watch.Elapsed.TotalSeconds;
        // Plain text on standard output: a summary a script can read, never wrapped at the terminal's width.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{output}: {summary.OriginalBytes:N0} → {summary.PackedBytes:N0} bytes, ratio {summary.Ratio:0.00}, {summary.Blocks:N0} blocks ({summary.ZeroBlocks:N0} zero, {summary.RawBlocks:N0} raw), {summary.OriginalBytes / 1e6 / seconds:0} MB/s in {seconds:0.00} s"));
        return 0;
    }

    private static int Unpack(string input, string output)
    {
        var watch = Stopwatch.StartNew();
        using var store = new CompressedPageStore(new FilePageStore(Path.GetFullPath(input), 0, false), input);
        long length = store.Length;
        ProgressConsole.Create().Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"unpacking {Path.GetFileName(input)}", maxValue: Math.Max(1, length));
                using var outStream = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
                var buffer = new byte[Math.Max(1 << 20, store.Pack.BlockSize)];
                for (long offset = 0; offset < length; offset += buffer.Length)
                {
                    int n = (int)Math.Min(buffer.Length, length - offset);
                    if (store.Read(offset, buffer.AsSpan(0, n)) == PageReadStatus.Zero)
                    {
                        Array.Clear(buffer, 0, n);
                    }
                    outStream.Write(buffer, 0, n);
                    task.Value = offset + n;
                }
            });
        double seconds = watch.Elapsed.TotalSeconds;
        // Plain text on standard output: a summary a script can read, never wrapped at the terminal's width.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{output}: {length:N0} bytes from {new FileInfo(input).Length:N0}, every block's checksum verified, {length / 1e6 / seconds:0} MB/s in {seconds:0.00} s"));
        return 0;
    }

    private static int ParseSize(string text)
    {
        long factor = char.ToUpperInvariant(text[^1]) switch { 'K' => 1024, 'M' => 1 << 20, _ => 1 };
        string digits = factor == 1 ? text : text[..^1];
        return long.TryParse(digits, CultureInfo.InvariantCulture, out long v) && v * factor <= int.MaxValue
            ? (int)(v * factor)
            : throw new ArgumentException($"'{text}' is not a size (4K … 1M)");
    }
}
