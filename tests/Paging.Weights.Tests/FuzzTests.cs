using System.Buffers.Binary;
using System.Diagnostics;

namespace Paging.Weights.Tests;

/// <summary>
/// Mutates valid headers of both formats and parses them: every case must either parse or throw
/// <see cref="WeightsFormatException"/> — no other exception, no hang, and no read outside the buffer (the buffer ends
/// at a PROT_NONE page, so an out-of-range read crashes the run). PAGING_FUZZ_CASES sets the count (default 100000).
/// </summary>
public sealed unsafe class FuzzTests
{
    [Fact]
    public void MutatedHeadersNeverCrashHangOrReadOutOfRange()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("PAGING_FUZZ_CASES"), out int n) ? n : 100_000;
        var seeds = new[]
        {
            Checkpoints.SafetensorsBytes([("a", "F32", [4, 4]), ("b.c", "BF16", [3]), ("s", "F64", []), ("e", "U8", [0])]),
            Checkpoints.GgufBytes([("w", "F32", [8, 2]), ("q", "Q4_0", [32, 2]), ("k", "Q6_K", [256])]),
            Checkpoints.GgufBytes([("w", "F16", [16])], alignment: 64, alignmentKey: true),
        };
        var rng = new Random(12345);
        using var buffer = new GuardedBuffer(1 << 16);
        int parsed = 0, rejected = 0;
        var sw = Stopwatch.StartNew();
        var scratch = new byte[1 << 16];
        for (int i = 0; i < cases; i++)
        {
            var seed = seeds[i % seeds.Length];
            int length = Mutate(seed, scratch, rng);
            byte* p = buffer.Place(scratch.AsSpan(0, length));
            try
            {
                if (length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(scratch) == 0x46554747)
                {
                    GgufReader.Parse(p, length);
                }
                else
                {
                    SafetensorsReader.Parse(p, length);
                }
                parsed++;
            }
            catch (WeightsFormatException)
            {
                rejected++;
            }
        }
        Assert.Equal(cases, parsed + rejected);
        Assert.True(rejected > cases / 10, $"only {rejected} of {cases} mutations were rejected: the mutator is too gentle");
        Assert.True(parsed > 0, "no mutation parsed: the seeds are invalid");
        Assert.True(sw.Elapsed < TimeSpan.FromMinutes(5), $"{cases} cases took {sw.Elapsed}");
    }

    private static int Mutate(byte[] seed, byte[] into, Random rng)
    {
        int length = seed.Length;
        seed.CopyTo(into, 0);
        int edits = 1 + rng.Next(4);
        for (int e = 0; e < edits; e++)
        {
            switch (rng.Next(6))
            {
                case 0: // flip a byte
                    into[rng.Next(length)] ^= (byte)(1 + rng.Next(255));
                    break;
                case 1: // truncate
                    length = rng.Next(length + 1);
                    break;
                case 2: // an extreme 64-bit value at a random offset (counts, lengths, dims, offsets)
                    if (length >= 8)
                    {
                        ulong[] extremes = [0, 1, ulong.MaxValue, long.MaxValue, (ulong)long.MaxValue + 1, 1UL << 32, 100_000_001, 31];
                        BinaryPrimitives.WriteUInt64LittleEndian(into.AsSpan(rng.Next(length - 7)), extremes[rng.Next(extremes.Length)]);
                    }
                    break;
                case 3: // an extreme 32-bit value (types, versions, ranks)
                    if (length >= 4)
                    {
                        uint[] extremes = [0, 4, 5, 9, 31, 99, uint.MaxValue, 0x80000000];
                        BinaryPrimitives.WriteUInt32LittleEndian(into.AsSpan(rng.Next(length - 3)), extremes[rng.Next(extremes.Length)]);
                    }
                    break;
                case 4: // a JSON-ish character
                    into[rng.Next(length)] = "{}[],:\"0-9e."u8[rng.Next(12)];
                    break;
                default: // duplicate a slice over another place
                    if (length > 2)
                    {
                        int from = rng.Next(length), to = rng.Next(length), n = rng.Next(1, Math.Min(16, length - Math.Max(from, to)) + 1);
                        into.AsSpan(from, Math.Min(n, length - from)).CopyTo(into.AsSpan(to));
                    }
                    break;
            }
        }
        return length;
    }
}
