
namespace Paging.Weights.Tests;

public sealed class RuntimeFixture : IDisposable
{
    public PagingRuntime Runtime { get; } = PagingRuntime.Start();

    public void Dispose() => Runtime.Dispose();
}

public sealed unsafe class ModelTests(RuntimeFixture fixture) : IClassFixture<RuntimeFixture>
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    private static void AssertTensorsMatchFile(WeightsModel model, string path)
    {
        var file = File.ReadAllBytes(path);
        foreach (var t in model.Tensors)
        {
            Assert.True(t.Bytes.SequenceEqual(file.AsSpan((int)t.Info.Offset, (int)t.Length)), $"tensor {t.Name} differs from the file");
        }
    }

    [Fact]
    public void SafetensorsEveryDTypeZeroRankAndEmptyTensors()
    {
        Assert.Equal(SafetensorsReader.DTypes.Order(StringComparer.Ordinal), Checkpoints.SafetensorsDTypes.Order(StringComparer.Ordinal));
        // Sub-byte dtypes (4 and 6 bits) need a multiple of 8 elements to be whole bytes.
        var tensors = Checkpoints.SafetensorsDTypes.Select((d, i) => ($"t{i}.{d}", d, SafetensorsReader.DTypeBits(d) < 8 ? new long[] { 8, 5 + i } : new long[] { 3, 5 + i })).ToList();
        tensors.Add(("scalar", "F32", []));
        tensors.Add(("empty", "F16", [0]));
        tensors.Add(("empty2", "BF16", [4, 0, 2]));
        var path = Checkpoints.WriteSafetensors(tensors, new() { ["format"] = "pt" });
        try
        {
            using var model = WeightsModel.Open(_runtime, path);
            Assert.True(model.Region.IsReadOnly, "a checkpoint on a shmem arena is mapped read-only");
            Assert.Equal("safetensors", model.Format);
            Assert.Equal(tensors.Count, model.Tensors.Count);
            Assert.Equal("pt", model.Header.Metadata["format"]);
            Assert.Empty(model["scalar"].Shape);
            Assert.Equal(4, model["scalar"].Length);
            Assert.Equal(0, model["empty"].Length);
            Assert.Equal(0, model["empty2"].Length);
            Assert.Equal(3 * 12, model["t7.F16"].AsSpan<Half>().Length);
            Assert.Throws<InvalidOperationException>(() => model["t0.BOOL"].AsSpan<float>()); // 15 bytes are not whole floats
            AssertTensorsMatchFile(model, path);
            Assert.Throws<KeyNotFoundException>(() => model["nope"]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ManyTensorsAndReleaseAndPrefetch()
    {
        // 3000 tensors of 1000-9000 bytes: many share pages with their neighbours.
        var tensors = Enumerable.Range(0, 3000).Select(i => ($"layers.{i / 10}.w{i % 10}", i % 2 == 0 ? "F16" : "F32", new long[] { 250 + (i % 9) * 250 })).ToList();
        var path = Checkpoints.WriteSafetensors(tensors);
        try
        {
            using var model = WeightsModel.Open(_runtime, path);
            model.Prefetch(model.Tensors.Take(1000));
            AssertTensorsMatchFile(model, path);
            // Releasing every other tensor drops pages wholly inside them; their neighbours and they themselves still
            // read right afterwards (dropped pages are read again).
            foreach (var t in model.Tensors.Where((_, i) => i % 2 == 0))
            {
                model.Release(t);
            }
            AssertTensorsMatchFile(model, path);
            Assert.Equal(0, model.Region.Statistics.Errors);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ReleaseFreesTheMemoryOfALargeTensor()
    {
        var path = Checkpoints.WriteSafetensors([("a", "F32", [1000]), ("big", "F32", [4 << 20]), ("b", "F32", [1000])]);
        try
        {
            using var model = WeightsModel.Open(_runtime, path);
            var big = model["big"];
            Assert.True(big.Bytes.SequenceEqual(File.ReadAllBytes(path).AsSpan((int)big.Info.Offset, (int)big.Length)));
            long pages = model.Region.Length / model.Region.PageSize;
            long before = model.Region.CountFilledPages(0, pages);
            model.Release(big);
            long after = model.Region.CountFilledPages(0, pages);
            Assert.True(before - after >= (big.Length / 4096) - 2, $"{before} -> {after} filled pages");
            AssertTensorsMatchFile(model, path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(32u, false)]
    [InlineData(64u, true)]
    public void GgufTensorsMatchTheFile(uint alignment, bool alignmentKey)
    {
        var tensors = new List<(string, string, long[])>
        {
            ("token_embd.weight", "F16", [64, 10]),
            ("blk.0.attn_q.weight", "Q4_0", [64, 4]),
            ("blk.0.ffn.weight", "Q8_0", [32, 3, 2]),
            ("blk.0.k.weight", "Q4_K", [256, 2]),
            ("norm", "F32", [7]),
            ("bf", "BF16", [5, 5]),
        };
        var path = Checkpoints.TempPath("gguf");
        File.WriteAllBytes(path, Checkpoints.GgufBytes(tensors, alignment, alignmentKey));
        try
        {
            using var model = WeightsModel.Open(_runtime, path);
            Assert.Equal("gguf", model.Format);
            Assert.Equal(6, model.Tensors.Count);
            Assert.Equal("llama", model.Header.Metadata["general.architecture"]);
            Assert.Equal(64 * 10 * 2, model["token_embd.weight"].Length);
            Assert.Equal(new long[] { 10, 64 }, model["token_embd.weight"].Shape);
            Assert.Equal(64 / 32 * 18 * 4, model["blk.0.attn_q.weight"].Length);
            Assert.All(model.Tensors, t => Assert.Equal(0, (t.Info.Offset - model.Header.DataStart) % alignment));
            AssertTensorsMatchFile(model, path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void FilesWithoutTensorsAreValid()
    {
        var st = Checkpoints.WriteSafetensors([], new() { ["k"] = "v" });
        var gg = Checkpoints.TempPath("gguf");
        File.WriteAllBytes(gg, Checkpoints.GgufBytes([]));
        try
        {
            using (var model = WeightsModel.Open(_runtime, st))
            {
                Assert.Empty(model.Tensors);
            }
            using (var model = WeightsModel.Open(_runtime, gg))
            {
                Assert.Empty(model.Tensors);
                Assert.Equal("test", model.Header.Metadata["general.name"]);
            }
        }
        finally
        {
            File.Delete(st);
            File.Delete(gg);
        }
    }
}
