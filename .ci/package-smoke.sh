#!/usr/bin/env bash
# Packs the libraries into a local feed, then builds a new console application that references only the Paging
# package and runs the README's first example against a generated file: the pager must be found automatically
# (copied by the package's buildTransitive targets) and the first byte must be the file's.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet pack -c Release -o "$work/feed" -p:ContinuousIntegrationBuild=true >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; exit 1; }
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props)
mkdir "$work/app"
cat >"$work/app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="paging-local" value="$work/feed" />
  </packageSources>
</configuration>
XML
cat >"$work/app/App.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="Paging" Version="$version" />
  </ItemGroup>
</Project>
XML
# The data file: byte i is (i * 7 + 3) mod 256, so the first byte is 3.
python3 -c "import sys; sys.stdout.buffer.write(bytes((i * 7 + 3) % 256 for i in range(1 << 16)))" >"$work/model.bin"
# The README's first C# block, with the example path replaced by the generated file.
awk '/^```csharp$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' README.md \
  | sed "s#/data/model.bin#$work/model.bin#" >"$work/app/Program.cs"
grep -q "PagingRuntime.Start" "$work/app/Program.cs" || { echo "package smoke: no README example found" >&2; exit 1; }
(cd "$work/app" && dotnet build -c Release -o out >"$work/build.log" 2>&1) || { cat "$work/build.log"; exit 1; }
[ -f "$work/app/out/paging-pager/Paging.Pager.dll" ] || { echo "package smoke: the pager was not copied to paging-pager/" >&2; exit 1; }
output=$(cd "$work/app/out" && dotnet App.dll)
echo "$output"
first=$(echo "$output" | head -n 1)
[ "$first" = "3" ] || { echo "package smoke: the first byte is '$first', expected 3" >&2; exit 1; }
echo "$output" | grep -Eq "PagesFilled = [1-9]" || { echo "package smoke: no page was filled" >&2; exit 1; }
echo "package smoke: the README example runs from the Paging package ($version)"
