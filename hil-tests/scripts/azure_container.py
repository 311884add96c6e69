"""Creates a blob container on Azurite: azure_container.py PORT NAME."""
import sys

from azure.storage.blob import BlobServiceClient

port, name = sys.argv[1], sys.argv[2]
conn = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
)
client = BlobServiceClient.from_connection_string(conn)
client.create_container(name)
print("created", name)
