using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Series;

namespace Paging.Bench;

/// <summary>SVG charts of a run (--plot DIR): ns/page per scenario and p50/p99 latency per scenario, log scale, drawn
/// with OxyPlot.Core's SVG exporter (no native code).</summary>
internal static class Charts
{
    public static IReadOnlyList<string> Write(string directory, IReadOnlyList<Result> results, string title)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        var labels = results.Select(r => r.Scenario + (r.ReadAhead.Length > 0 ? "" : " (baseline)")).ToList();
        written.Add(Save(directory, "ns-per-page.svg", Bars(title + ": ns per 4 KiB page (lower is better)", "ns/page", labels,
            ("ns/page", OxyColor.FromRgb(0x1f, 0x77, 0xb4), results.Select(r => r.NsPerPage)))));
        written.Add(Save(directory, "latency.svg", Bars(title + ": latency of one touch, fault included", "ns", labels,
            ("p50", OxyColor.FromRgb(0x2c, 0xa0, 0x2c), results.Select(r => r.P50Ns)),
            ("p99", OxyColor.FromRgb(0xd6, 0x27, 0x28), results.Select(r => r.P99Ns)))));
        return written;
    }

    private static PlotModel Bars(string title, string unit, IReadOnlyList<string> labels, params (string Name, OxyColor Color, IEnumerable<double> Values)[] series)
    {
        // Fixed margins: the SVG exporter cannot measure text without a renderer, and the scenario names need ~290 px.
        var model = new PlotModel
        {
            Title = title, TitleFontSize = 13, Background = OxyColors.White,
            PlotMargins = new OxyThickness(290, 10, 20, 45), Padding = new OxyThickness(10, 20, 10, 10),
        };
        model.Axes.Add(new CategoryAxis { Position = AxisPosition.Left, ItemsSource = labels, StartPosition = 1, EndPosition = 0, FontSize = 10 });
        // Log scale: a run spans 0.1 µs (pre-mapped pages) to 50 µs (one-page round trips).
        model.Axes.Add(new LogarithmicAxis { Position = AxisPosition.Bottom, Title = unit, MajorGridlineStyle = LineStyle.Dot, Minimum = 10 });
        model.Legends.Add(new OxyPlot.Legends.Legend
        {
            LegendPlacement = OxyPlot.Legends.LegendPlacement.Outside, LegendPosition = OxyPlot.Legends.LegendPosition.TopRight,
            LegendOrientation = OxyPlot.Legends.LegendOrientation.Horizontal,
        });
        foreach (var (name, color, values) in series)
        {
            var bars = new BarSeries { Title = name, FillColor = color, BaseValue = 10 };
            foreach (double v in values)
            {
                bars.Items.Add(new BarItem(Math.Max(v, 10)));
            }
            model.Series.Add(bars);
        }
        return model;
    }

    private static string Save(string directory, string name, PlotModel model)
    {
        string path = Path.Combine(directory, name);
        int height = 140 + 22 * ((CategoryAxis)model.Axes[0]).ItemsSource.Cast<object>().Count() * Math.Max(1, model.Series.Count);
        using var stream = File.Create(path);
        new SvgExporter { Width = 1100, Height = height }.Export(model, stream);
        return path;
    }
}

/// <summary>A plain-text table with columns padded to their widest cell: stays aligned in a file or a pipe, where
/// a terminal table would be cut to a guessed width.</summary>
internal static class TextTable
{
    public static void Write(TextWriter output, IReadOnlyList<string> headers, IReadOnlyList<string[]> rows, int leftAligned = 1)
    {
        var widths = headers.Select(h => h.Length).ToArray();
        foreach (var row in rows)
        {
            for (int i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }
        string Line(IReadOnlyList<string> cells) => string.Join("  ", cells.Select((c, i) => i < leftAligned ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd();
        output.WriteLine(Line(headers));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in rows)
        {
            output.WriteLine(Line(row));
        }
    }
}
